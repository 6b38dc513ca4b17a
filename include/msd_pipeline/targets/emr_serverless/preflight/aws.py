"""The AWS reads of the EMR Serverless preflight: the EMR preflight's hook
(targets/emr/preflight/aws.py: clients that retry little, the S3 probe, the release
labels, the simulation) plus the execution role, subnets and security groups by id, and
the ECR image with its repository policy."""
import json
import urllib.parse
from typing import Any, Dict, List, Union

from msd_pipeline.targets.emr.preflight.aws import PreflightHook


class ServerlessPreflightHook(PreflightHook):

    def role(self, name: str) -> Dict[str, Any]:
        """``iam:GetRole``'s Role, its trust policy as a dict."""
        role = self.client("iam").get_role(RoleName=name)["Role"]
        return {**role, "AssumeRolePolicyDocument": policy_document(
            role.get("AssumeRolePolicyDocument", {}))}

    def subnets(self, subnet_ids: List[str]) -> List[Dict[str, Any]]:
        return self.client("ec2").describe_subnets(SubnetIds=list(subnet_ids))["Subnets"]

    def security_groups_by_id(self, group_ids: List[str]) -> List[Dict[str, Any]]:
        return self.client("ec2").describe_security_groups(
            GroupIds=list(group_ids))["SecurityGroups"]

    def image(self, registry_id: str, repository: str, image_id: Dict[str, str]) -> Dict[str, Any]:
        return self.client("ecr").describe_images(registryId=registry_id, repositoryName=repository,
                                                  imageIds=[image_id])["imageDetails"][0]

    def repository_policy(self, registry_id: str, repository: str) -> Dict[str, Any]:
        text = self.client("ecr").get_repository_policy(registryId=registry_id,
                                                        repositoryName=repository)["policyText"]
        return policy_document(text)


def policy_document(document: Union[str, Dict[str, Any]]) -> Dict[str, Any]:
    """A policy as a dict (IAM answers URL-encoded JSON where botocore does not decode it)."""
    if isinstance(document, dict):
        return document
    text = document.strip()
    return json.loads(text if text.startswith("{") else urllib.parse.unquote(text))
