-- One database per service on the deployment's PostgreSQL (deploy/docker-compose.yml): Rasa's
-- tracker store, the risk API, the dialler's queue, the quality inspection's event stream.
-- The owner is POSTGRES_USER (ivr); the official image runs this once, on an empty volume.
CREATE DATABASE rasa;
CREATE DATABASE risk;
CREATE DATABASE outbound;
CREATE DATABASE quality;
