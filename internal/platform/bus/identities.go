package bus

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// Identity is one service's user on the broker and what it may do there:
// publish the events of the types it owns and nothing else (a leaked or
// buggy service cannot speak for another), use JetStream for its own
// consumers, and neither change nor empty the pipeline's streams.
type Identity struct {
	// Service names the service; it is also the broker user's name.
	Service  string
	Password string
	// Publishes are the event types this service emits.
	Publishes []string
	// Replays lets it send dead letters back to their consumers and purge
	// the DLQ (the gateway's admin API and `ordermesh dlq`).
	Replays bool
}

// pipelineStreams are the streams only the administrative user may
// create, change, delete or purge.
var pipelineStreams = []string{StreamEvents, StreamDLQ, StreamReplay}

// publishAllow is what id may publish.
func (id Identity) publishAllow() []string {
	allow := []string{
		"$JS.API.>",          // its consumers, stream reads (deny below)
		"$JS.ACK.>",          // acknowledging what it is delivered
		"$JS.FC.>",           // flow control of ordered consumers
		dlqPrefix + ">",      // dead letters of its consumers
		changedPrefix + ">",  // change signals for long polls
		presencePrefix + ">", // counting the instances of a partitioned consumer
	}
	for _, t := range id.Publishes {
		allow = append(allow, SubjectPrefix+t, SubjectPrefix+t+".*")
	}
	if id.Replays {
		allow = append(allow, replayPrefix+">")
	}
	return allow
}

// publishDeny is what no service may publish: changes to the pipeline's
// streams (replays purge and delete in the DLQ only) and their consumers.
func (id Identity) publishDeny() []string {
	var deny []string
	for _, st := range pipelineStreams {
		for _, op := range []string{"CREATE", "UPDATE", "DELETE"} {
			deny = append(deny, "$JS.API.STREAM."+op+"."+st)
		}
		if st != StreamDLQ || !id.Replays {
			deny = append(deny, "$JS.API.STREAM.PURGE."+st, "$JS.API.STREAM.MSG.DELETE."+st)
		}
		if !id.Replays {
			// Nor delete a consumer of them (another service's durable
			// would replay its whole stream). The gateway reads them with
			// ordered consumers, which delete themselves when done.
			deny = append(deny, "$JS.API.CONSUMER.DELETE."+st+".>")
		}
	}
	return append(deny, "$JS.API.STREAM.RESTORE.>", "$JS.API.ACCOUNT.PURGE.>")
}

// user is id as the embedded server's user.
func (id Identity) user() *server.User {
	return &server.User{Username: id.Service, Password: id.Password, Permissions: &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: id.publishAllow(), Deny: id.publishDeny()},
		Subscribe: &server.SubjectPermission{Allow: []string{">"}},
	}}
}

// ServerConfig is id as an entry of a nats-server configuration's
// authorization { users = [ … ] } list. password is what the file says
// instead of the password: a bcrypt hash, or "$VAR" for one from the
// environment.
func (id Identity) ServerConfig(password string) string {
	quote := func(ss []string) string {
		q := make([]string, len(ss))
		for i, s := range ss {
			q[i] = fmt.Sprintf("%q", s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return fmt.Sprintf("    {user: %q, password: %s, permissions: {\n      publish: {allow: %s,\n                deny: %s},\n      subscribe: {allow: [\">\"]}}}",
		id.Service, password, quote(id.publishAllow()), quote(id.publishDeny()))
}

// CanPublish says whether id may publish events of type typ.
func (id Identity) CanPublish(typ string) bool { return slices.Contains(id.Publishes, typ) }
