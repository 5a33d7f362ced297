"""Scan one TLS server with sslyze and check it against Mozilla's intermediate profile.

Runs in its own virtualenv (sslyze pins cryptography below the controller's;
tests/integration/nginx_mtls/requirements-sslyze.txt). Prints one JSON object:

  issues       {name: text} from sslyze's Mozilla checker, public trust stores only
  trust_stores [{name, ok, error}] path validation against each store sslyze
               knows, plus the private CA given with --ca (name "private CA")
  lifespan_days, tls_versions

Usage: python sslyze_mozilla.py HOST:PORT --ca CA.crt [--profile intermediate]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from sslyze import (
    CertificateInfoExtraArgument,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)


def scan(host, port, ca_file=None):
    extra = ScanCommandsExtraArguments(certificate_info=CertificateInfoExtraArgument(custom_ca_file=pathlib.Path(ca_file)) if ca_file else None)
    request = ServerScanRequest(server_location=ServerNetworkLocation(hostname=host, port=port), scan_commands_extra_arguments=extra)
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = scanner.get_results()
    if result.scan_status != ServerScanStatusEnum.COMPLETED:
        raise SystemExit(f"sslyze could not scan {host}:{port}: {result.connectivity_error_trace}")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("server")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--profile", default="intermediate", choices=[e.value for e in TlsConfigurationEnum])
    args = parser.parse_args(argv)
    host, port = args.server.rsplit(":", 1)
    profile = MozillaTlsConfiguration.get(TlsConfigurationEnum(args.profile))

    # Mozilla's checker on a scan that knows only the public trust stores.
    public = scan(host, int(port))
    try:
        check_server_against_tls_configuration(public, profile)
        issues = {}
    except ServerNotCompliantWithTlsConfiguration as error:
        issues = dict(error.issues)

    # Path validation of the same chain, with the private CA as one more store.
    private = scan(host, int(port), args.ca)
    deployment = private.scan_result.certificate_info.result.certificate_deployments[0]
    stores = [
        {
            "name": "private CA" if res.trust_store.path == pathlib.Path(args.ca) else res.trust_store.name,
            "ok": res.was_validation_successful,
            "error": res.validation_error,
        }
        for res in deployment.path_validation_results
    ]
    leaf = deployment.received_certificate_chain[0]
    json.dump(
        {
            "issues": issues,
            "trust_stores": stores,
            "lifespan_days": (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days,
            "profile": args.profile,
        },
        sys.stdout,
        indent=1,
    )
    print()


if __name__ == "__main__":
    main()
