"""`collect`: live collection over websockets with a REST-polling fallback."""
