"""Google Cloud as a cloud target: the gce tar.gz to Cloud Storage, a Compute Engine image, instances."""
