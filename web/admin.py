"""Catalog and user administration (behind the API key when one is set)."""

from __future__ import annotations

from flask import Blueprint

from serving.events import put_user
from serving.items import delete_item, put_item
from web.auth import admin_only
from web.body import as_json, body, service

admin = Blueprint("admin", __name__)


@admin.put("/items/<path:item_id>")
@admin_only
def put_item_route(item_id):
    return as_json(put_item(service(), item_id, body()))


@admin.delete("/items/<path:item_id>")
@admin_only
def delete_item_route(item_id):
    return as_json(delete_item(service(), item_id))


@admin.put("/users/<path:user_id>")
@admin_only
def put_user_route(user_id):
    return as_json(put_user(service(), user_id, body()))


@admin.post("/admin/rebuild")
@admin_only
def rebuild_route():
    svc = service()
    summary = svc.rebuild()
    served = svc.catalog.bundle.version if svc.catalog.bundle else None
    return as_json({"rebuilt": summary is not None, "index_version": served, **(summary or {})})
