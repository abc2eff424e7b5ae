package gormstore

import (
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Pool sets the limits of a connection pool that Open creates.
type Pool struct {
	MaxOpenConns    int
	MaxIdleConns    int
	ConnMaxLifetime time.Duration // 0: connections are not recycled by age
	ConnMaxIdleTime time.Duration // 0: idle connections are not closed by age
}

// Open connects through dialector (a GORM driver's Open), applies pool, and
// returns a Store that owns the pool: Close closes it. The one-line
// constructors in sqlitestore and postgresstore are built on it; a driver
// package is only compiled by whoever imports it.
func Open(dialector gorm.Dialector, pool Pool, opts Options) (*Store, error) {
	// gorm's own logger would print SQL to stdout; errors reach the caller
	// anyway.
	db, err := gorm.Open(dialector, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		if db != nil { // gorm.Open leaves the pool open when its ping fails
			if sqlDB, derr := db.DB(); derr == nil {
				_ = sqlDB.Close()
			}
		}
		return nil, err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(pool.MaxOpenConns)
	sqlDB.SetMaxIdleConns(pool.MaxIdleConns)
	sqlDB.SetConnMaxLifetime(pool.ConnMaxLifetime)
	sqlDB.SetConnMaxIdleTime(pool.ConnMaxIdleTime)
	opts.CloseDB = true
	st, err := New(db, opts)
	if err != nil {
		_ = sqlDB.Close()
		return nil, err
	}
	return st, nil
}
