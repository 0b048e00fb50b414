"""The embeddable player page (GET /embed/<token>) and its vendored browser assets."""
