"""The Pulumi program for the Kubernetes targets (onprem, cloud) and the cloud-vm flavour."""
