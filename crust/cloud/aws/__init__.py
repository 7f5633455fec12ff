"""cloud/aws."""
