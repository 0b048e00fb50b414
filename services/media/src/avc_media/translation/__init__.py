"""AI translation of subtitle tracks, behind a translator port picked from AVC_TRANSLATOR_URL."""
