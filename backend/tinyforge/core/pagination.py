from django.conf import settings
from rest_framework import pagination

from tinyforge.core.query import query_int, single_query_value


class PageNumberPagination(pagination.PageNumberPagination):
    """?page=N&page_size=M. A page_size that is not a whole number between 1 and MAX_PAGE_SIZE
    is a 400 (not silently replaced), so a client learns the bound instead of missing rows."""

    page_size_query_param = "page_size"

    @property
    def max_page_size(self) -> int:
        return settings.MAX_PAGE_SIZE

    def get_page_size(self, request):
        return query_int(request, self.page_size_query_param, default=self.page_size, minimum=1,
                         maximum=self.max_page_size)

    def get_page_number(self, request, paginator):
        raw = single_query_value(request, self.page_query_param)
        if raw in self.last_page_strings:
            return raw
        return query_int(request, self.page_query_param, default=1, minimum=1, maximum=10**9)
