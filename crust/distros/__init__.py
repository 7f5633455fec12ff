"""distros."""
