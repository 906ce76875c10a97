"""bytrev: run ordinary Python functions backwards."""
