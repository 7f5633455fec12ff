"""libvirt hosts as a cloud target."""
