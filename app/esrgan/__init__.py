"""Real-ESRGAN models for the ``local`` provider (the optional ``esrgan`` extra).

``models`` is the table (limits as data), ``engine`` runs in a worker process and does the
pixel work, ``pool`` owns those processes from the event loop, ``vulkan`` checks a GPU.
Nothing here imports the extra's package at import time: without it, the gateway starts and
offers Lanczos alone.
"""
