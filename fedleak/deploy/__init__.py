"""Deploying fedleak on Flower's deployment runtime: certificates and keys (``certs.py``).

The topology itself is ``docker-compose.yml`` at the repository root (README "Deploy").
"""
