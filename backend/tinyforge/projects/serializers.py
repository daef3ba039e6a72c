from rest_framework import serializers

from tinyforge.core.api import StrictModelSerializer
from tinyforge.projects.models import Project


class ProjectSerializer(StrictModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "team", "name", "description", "created_by", "created_at", "updated_at"]
        read_only_fields = ["created_by"]
        # The (team, name) constraint is checked in validate(), so its reason belongs to `name`
        # (DRF's own validator would report it against the form as a whole).
        validators = []

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list):
            fields["team"].read_only = True  # a project does not move between teams
        return fields

    def validate(self, attrs):
        team = attrs.get("team") or getattr(self.instance, "team", None)
        name = attrs.get("name")
        if team is not None and name is not None:
            taken = Project.all_teams.filter(team=team, name=name)
            if self.instance is not None:
                taken = taken.exclude(pk=self.instance.pk)
            if taken.exists():
                raise serializers.ValidationError({"name": [f"The team already has a project named {name}; names are unique in a team."]})
        return attrs
