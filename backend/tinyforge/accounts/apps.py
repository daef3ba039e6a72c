from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "tinyforge.accounts"
    label = "accounts"
    verbose_name = "Teams, members and API tokens"
