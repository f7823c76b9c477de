package gateway

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/ordermesh/ordermesh/internal/platform/sqldb"
)

// The API keys' table: every query of the gateway.

// ListAPIKeys returns every key's description, newest first.
func ListAPIKeys(ctx context.Context, db *sqldb.DB) ([]APIKey, error) {
	rows, err := db.Query(ctx, `SELECT id, subject, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at DESC`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []APIKey
	for rows.Next() {
		var k APIKey
		var scopes, created string
		var revoked sql.NullString
		if err := rows.Scan(&k.ID, &k.Subject, &scopes, &created, &revoked); err != nil {
			return nil, err
		}
		k.Scopes = strings.Fields(scopes)
		k.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
		if revoked.Valid {
			t, _ := time.Parse(time.RFC3339Nano, revoked.String)
			k.RevokedAt = &t
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// insertAPIKey stores a new key's description under its hash.
func insertAPIKey(ctx context.Context, db *sqldb.DB, info APIKey, hash string) error {
	_, err := db.Exec(ctx, `INSERT INTO api_keys (id, hash, subject, scopes, created_at) VALUES (?, ?, ?, ?, ?)`,
		info.ID, hash, info.Subject, strings.Join(info.Scopes, " "), info.CreatedAt.Format(time.RFC3339Nano))
	return err
}

// activeAPIKey is the key with hash, if it is not revoked (else
// sql.ErrNoRows).
func activeAPIKey(ctx context.Context, db *sqldb.DB, hash string) (id, subject, scopes string, err error) {
	err = db.QueryRow(ctx, `SELECT id, subject, scopes FROM api_keys WHERE hash = ? AND revoked_at IS NULL`, hash).Scan(&id, &subject, &scopes)
	return id, subject, scopes, err
}

// revokeAPIKey marks key id revoked at now, and says whether it was active.
func revokeAPIKey(ctx context.Context, db *sqldb.DB, id string, now time.Time) (int64, error) {
	res, err := db.Exec(ctx, `UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, now.Format(time.RFC3339Nano), id)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
