"""Configuration, database, Redis, errors, logging and the database initialisers."""
