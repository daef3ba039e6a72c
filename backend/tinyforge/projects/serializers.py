from tinyforge.core.api import StrictModelSerializer
from tinyforge.projects.models import Project


class ProjectSerializer(StrictModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "team", "name", "description", "created_by", "created_at", "updated_at"]
        read_only_fields = ["created_by"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list):
            fields["team"].read_only = True  # a project does not move between teams
        return fields
