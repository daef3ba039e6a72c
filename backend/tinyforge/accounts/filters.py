from django_filters import rest_framework as filters

from tinyforge.accounts.models import ApiToken, Invitation, Membership
from tinyforge.core.api import IdFilter
from tinyforge.core.roles import Role


class MembershipFilter(filters.FilterSet):
    team = IdFilter(field_name="team_id")
    role = filters.ChoiceFilter(choices=Role.choices)

    class Meta:
        model = Membership
        fields = ["team", "role"]


class InvitationFilter(filters.FilterSet):
    team = IdFilter(field_name="team_id")
    open = filters.BooleanFilter(field_name="accepted_at", lookup_expr="isnull", label="Not accepted yet")

    class Meta:
        model = Invitation
        fields = ["team", "open"]


class ApiTokenFilter(filters.FilterSet):
    team = IdFilter(field_name="team_id")
    revoked = filters.BooleanFilter(field_name="revoked_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = ApiToken
        fields = ["team", "revoked"]
