from django.conf import settings
from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """?page=N&page_size=M; page_size is capped at MAX_PAGE_SIZE (an oversized one is cut down,
    a non-number falls back to the default), so a client cannot ask for the whole table."""

    page_size_query_param = "page_size"

    @property
    def max_page_size(self) -> int:
        return settings.MAX_PAGE_SIZE
