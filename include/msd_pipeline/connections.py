"""Values read from Airflow connections at task run time (never at parse time), each
registered with Airflow's secrets masker so that no task log shows it."""
from urllib.parse import urlencode

from airflow.sdk.log import mask_secret


def mongo_uri_from_connection(conn_id: str) -> str:
    """The connection's MongoDB URI with its extras as URI options, as MongoHook connects:
    ``mongodb+srv://`` when the extra has ``srv`` (the hook takes it out of the options),
    ``tlsAllowInvalidCertificates`` for ``allow_insecure`` with TLS on."""
    from airflow.providers.mongo.hooks.mongo import MongoHook

    hook = MongoHook(mongo_conn_id=conn_id)  # reads the connection; opens no socket
    options = {key: str(value).lower() if isinstance(value, bool) else value
               for key, value in hook.extras.items()}
    if hook.allow_insecure:
        options["tlsAllowInvalidCertificates"] = "true"
    uri = hook.uri
    if options:
        uri += ("?" if hook.connection.schema else "/?") + urlencode(options)
    mask_secret(uri)
    if hook.connection.password:
        mask_secret(hook.connection.password)
    return uri
