package inbox

import (
	"context"
	"fmt"

	"github.com/ordermesh/ordermesh/internal/platform/bus"
	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// Typed handlers, in the spirit of Watermill's NewEventHandler[T]: a
// consumer lists one Route per event type, each with its payload decoded,
// and its subscription is the routes' types. No service switches on the
// event's type or decodes it by hand.

// Route is the handler of one event type.
type Route struct {
	Type   string
	handle TxHandler
}

// On routes events of type typ to h, with their data decoded into a T (a
// payload that does not decode is a permanent error: retrying cannot fix
// it).
func On[T any](typ string, h func(ctx context.Context, tx *sqldb.Tx, ev bus.Event, data T) error) Route {
	return Route{Type: typ, handle: func(ctx context.Context, tx *sqldb.Tx, ev bus.Event) error {
		var data T
		if err := ev.DecodeData(&data); err != nil {
			return err
		}
		return h(ctx, tx, ev, data)
	}}
}

// OnEvent routes events of type typ to h as they are, for a handler that
// needs only the event's type and subject.
func OnEvent(typ string, h TxHandler) Route { return Route{Type: typ, handle: h} }

// Routes are a consumer's handlers.
type Routes []Route

// Types are the event types the routes handle: the consumer's subscription.
func (rs Routes) Types() []string {
	types := make([]string, len(rs))
	for i, r := range rs {
		types[i] = r.Type
	}
	return types
}

// Handler dispatches each event to its type's route. An event of a type
// without one (a consumer never subscribes to it, so it was forged or
// misrouted) is a permanent error.
func (rs Routes) Handler(consumer string) TxHandler {
	byType := make(map[string]TxHandler, len(rs))
	for _, r := range rs {
		byType[r.Type] = r.handle
	}
	return func(ctx context.Context, tx *sqldb.Tx, ev bus.Event) error {
		h, ok := byType[ev.Type]
		if !ok {
			return bus.Permanent(fmt.Errorf("%s does not handle %s", consumer, ev.Type))
		}
		return h(ctx, tx, ev)
	}
}
