from django.conf import settings
from rest_framework import exceptions, pagination


class PageNumberPagination(pagination.PageNumberPagination):
    """?page=N&page_size=M. A page_size that is not a whole number between 1 and MAX_PAGE_SIZE
    is a 400 (not silently replaced), so a client learns the bound instead of missing rows."""

    page_size_query_param = "page_size"

    @property
    def max_page_size(self) -> int:
        return settings.MAX_PAGE_SIZE

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw in (None, ""):
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise exceptions.ValidationError(
                {"page_size": [f"Must be a whole number between 1 and {self.max_page_size}."]}
            )
        return size

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param, 1)
        if raw in self.last_page_strings:
            return raw
        try:
            number = int(raw)
        except ValueError:
            number = 0
        if not 1 <= number <= 10**9:
            raise exceptions.ValidationError({"page": ["Must be a positive whole number."]})
        return number
