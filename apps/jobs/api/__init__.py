"""The REST API of the jobs system (Django REST framework), on the same services as the admin.

Other apps expose their actors to it with `registry.expose` and reuse its serializers, errors and
idempotency for their own endpoints.
"""
