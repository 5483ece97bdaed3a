"""Deploying fedleak on Flower's deployment runtime: certificates and keys (``certs.py``), and the
compose topology as processes on 127.0.0.1 (``local.py``: tests, benchmarks, a first look).

The topology itself is ``docker-compose.yml`` at the repository root (README "Deploy").
"""
