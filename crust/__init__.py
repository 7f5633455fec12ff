"""Crust: builds pre-baked virtual appliances from kickstarts and Ansible roles."""

__version__ = "0.1.0"
