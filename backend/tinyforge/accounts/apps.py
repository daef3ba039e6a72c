from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "tinyforge.accounts"
    label = "accounts"
    verbose_name = "Teams, members and API tokens"

    def ready(self) -> None:
        from tinyforge.accounts import schema  # noqa: F401  (registers the token scheme with drf-spectacular)
        from tinyforge.accounts.models import ApiToken, Membership
        from tinyforge.core.access import register_accounts

        register_accounts(membership_model=Membership, token_model=ApiToken)
