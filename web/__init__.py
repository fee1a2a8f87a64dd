"""The HTTP layer's parts: request bodies and JSON answers (`body`), the API key (`auth`), and
one blueprint per concern: the client API (`api`), catalog and user administration
(`admin`), operations and status (`ops`), JSON errors (`errors`). `app.create_app` puts them
together."""
