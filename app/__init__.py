"""image-gateway: one normalized REST API in front of image AI vendors."""

__version__ = "0.1.0"
