"""Telling people and programs what changed: the events outbox and everything that reads it
(the event API and live stream, webhooks, reminder mail)."""
