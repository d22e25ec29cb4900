"""Airflow plugin: the "ColdCopy DB health" page in the UI's nav (Browse), served by a FastAPI app at
/coldcopy-health/ (JSON at /coldcopy-health/api), behind Airflow's authentication. See coldcopy.health_page."""

from functools import cached_property

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/coldcopy-health"


class ColdCopyHealthPlugin(AirflowPlugin):
    name = "coldcopy_health"
    external_views = [{
        "name": "ColdCopy DB health",
        "href": f"{URL_PREFIX}/",
        "destination": "nav",
        "category": "browse",
        "url_route": "coldcopy-health",
    }]

    @cached_property
    def fastapi_apps(self) -> list[dict]:
        # Built when first asked for (the api-server): every task process loads the plugins too (for macros),
        # and importing the app with Airflow's auth dependencies costs about a second.
        from coldcopy.health_page import create_app

        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "ColdCopy DB health"}]
