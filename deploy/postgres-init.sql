-- One schema per service in one database; each service's DSN selects its
-- own with search_path (see docker-compose.yml).
CREATE SCHEMA IF NOT EXISTS orders AUTHORIZATION ordermesh;
CREATE SCHEMA IF NOT EXISTS inventory AUTHORIZATION ordermesh;
CREATE SCHEMA IF NOT EXISTS payments AUTHORIZATION ordermesh;
CREATE SCHEMA IF NOT EXISTS shipping AUTHORIZATION ordermesh;
CREATE SCHEMA IF NOT EXISTS notifications AUTHORIZATION ordermesh;
CREATE SCHEMA IF NOT EXISTS psp AUTHORIZATION ordermesh;
CREATE SCHEMA IF NOT EXISTS gateway AUTHORIZATION ordermesh;
