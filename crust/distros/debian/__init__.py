"""distros/debian."""
