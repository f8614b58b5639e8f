-- Run once by the postgres image, on the first start with an empty data volume
-- (/docker-entrypoint-initdb.d), as $POSTGRES_USER: one database per server of the stack.
-- Both are owned by that user; the connection URLs in ../compose.yaml use the same credentials.
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
