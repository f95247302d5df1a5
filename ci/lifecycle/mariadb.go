package lifecycle

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/imagemode/imagemode/ci/smoke"
)

// MariaDBRows writes a row before the transitions and reads it back after each one: a database host's data
// survives switches and profile upgrades (MariaDB's major version may change, and the image's upgrade step runs).
type MariaDBRows struct {
	// Probe carries the credentials the VM was started with.
	Probe smoke.MariaDB
	token string
}

// Name implements Persistence.
func (m *MariaDBRows) Name() string { return "MariaDB rows" }

func (m *MariaDBRows) db(s *Session) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = m.Probe.User, m.Probe.Password
	cfg.Net, cfg.Addr, cfg.DBName = "tcp", s.cfg.Machine.Addr(3306), "imagemode_smoke"
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 5*time.Second, 10*time.Second, 10*time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mariadb: %w", err)
	}
	return sql.OpenDB(conn), nil
}

// Write implements Persistence.
func (m *MariaDBRows) Write(ctx context.Context, s *Session) error {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	m.token = hex.EncodeToString(b)
	db, err := m.db(s)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS lifecycle (token VARCHAR(32) PRIMARY KEY, written TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"); err != nil {
		return fmt.Errorf("creating the table: %w", err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO lifecycle (token) VALUES (?)", m.token); err != nil {
		return fmt.Errorf("writing a row: %w", err)
	}
	return nil
}

// Check implements Persistence.
func (m *MariaDBRows) Check(ctx context.Context, s *Session) error {
	db, err := m.db(s)
	if err != nil {
		return err
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM lifecycle WHERE token = ?", m.token).Scan(&n); err != nil {
		return fmt.Errorf("reading the row back: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("the row written before the transition is gone")
	}
	return nil
}
