"""OpenStack (Glance images, Nova servers) as a cloud target."""
