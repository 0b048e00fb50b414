"""Accounts and API keys: the gateway's own identity store (collections `accounts`, `api_keys`)."""
