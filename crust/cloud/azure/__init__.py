"""The Azure target."""
