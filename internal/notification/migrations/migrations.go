// Package migrations holds the notifications service's tables (messages
// and merchant webhooks), apart so the webhook package's tests can create
// them without importing the service.
package migrations

import (
	"embed"

	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

//go:embed postgres sqlite
var files embed.FS

// Migrations are the notifications service's tables.
func Migrations() sqldb.Migrations { return sqldb.Migrations{Component: "notifications", FS: files} }
