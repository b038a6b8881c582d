-- A verbatim copy of ../shared/baselines/postgres-per-bet/schema.sql: the baseline the load
-- generator measures against (crates/loadgen/src/postgres.rs must produce the same statements).
DROP TABLE IF EXISTS ledger, bets, markets, wallets;
CREATE TABLE wallets(id int PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE markets(id int PRIMARY KEY, liability bigint NOT NULL);
CREATE TABLE bets(id bigserial PRIMARY KEY, account int NOT NULL, market int NOT NULL, stake bigint NOT NULL, odds int NOT NULL, created timestamptz NOT NULL DEFAULT now());
CREATE TABLE ledger(id bigserial PRIMARY KEY, account int NOT NULL, amount bigint NOT NULL, bet_id bigint NOT NULL);
INSERT INTO wallets SELECT g, 1000000000000 FROM generate_series(1,100000) g;
INSERT INTO markets SELECT g, 0 FROM generate_series(1,1000) g;
VACUUM ANALYZE wallets; VACUUM ANALYZE markets;
