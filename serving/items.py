"""`PUT /items/{item_id}`: upsert an item; it is searchable at once through the fresh buffer."""

from __future__ import annotations

from banditrec.errors import InvalidRequest, NotFound
from retrieval.data import check_id, normalise_item
from serving.service import Service


def put_item(service: Service, item_id: str, body) -> dict:
    check_id(item_id, "item_id in the path")
    if isinstance(body, dict) and "item_id" in body and body["item_id"] != item_id:
        raise InvalidRequest(f"item_id in the body ({body['item_id']!r}) differs from the path ({item_id!r})")
    item = normalise_item(body, item_id=item_id)
    if isinstance(body, dict) and body.get("published_at") is None:
        item["published_at"] = int(service.clock())  # new to the catalog now
    catalog = service.catalog
    created = item_id not in catalog.row_of
    vector = catalog.embedder.embed([item])[0]
    cursor = service.store.append_item(item, vector, catalog.space)  # recorded for every process first
    service.sync_catalog(force=True)
    return {"item_id": item_id, "created": created, "catalog_cursor": cursor}


def delete_item(service: Service, item_id: str) -> dict:
    """Remove an item: it disappears from answers at once, and from the next index version."""
    check_id(item_id, "item_id in the path")
    if item_id not in service.catalog.row_of:
        service.sync_catalog(force=True)
        if item_id not in service.catalog.row_of:
            raise NotFound(f"item_id {item_id!r} is not in the catalog")
    cursor = service.store.append_item({"item_id": item_id, "deleted": True}, None)
    service.sync_catalog(force=True)
    return {"item_id": item_id, "deleted": True, "catalog_cursor": cursor}
