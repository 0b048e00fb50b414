"""Player presets: CRUD scoped to the account."""
