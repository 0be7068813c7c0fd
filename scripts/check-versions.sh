#!/usr/bin/env bash
# The version is stated in three places, which must agree: Cargo.toml's
# package version, the Helm chart's appVersion (the image tag it installs) and
# the latest release in CHANGELOG.md ("## [X.Y.Z] - YYYY-MM-DD").
#
#   scripts/check-versions.sh              check they agree; print the version
#   scripts/check-versions.sh vX.Y.Z       also check a release tag against them
#   scripts/check-versions.sh --notes      print the latest release's CHANGELOG
#                                          section (the GitHub release's text)
#
# Exits non-zero with a message naming the file when they disagree. Used by
# scripts/check-deploy.sh and by .github/workflows/release.yml.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

cargo_version="$(sed -n '/^\[package\]/,/^\[/ s/^version = "\(.*\)"/\1/p' Cargo.toml)"
app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' helm/ssehub/Chart.yaml)"
# The first "## [X.Y.Z] - date" heading; [Unreleased] above it is not a release.
release_heading="$(grep -m 1 -E '^## \[[0-9]+\.[0-9]+\.[0-9]+[^]]*\]' CHANGELOG.md || true)"
changelog_version="$(sed -E 's/^## \[([^]]+)\].*/\1/' <<<"$release_heading")"

if [[ "${1:-}" == --notes ]]; then
  # Everything under the latest release's heading up to the next release.
  awk -v heading="$release_heading" '
    $0 == heading { inside = 1; next }
    inside && /^## \[/ { exit }
    inside && /^\[[^]]+\]: / { exit }
    inside { print }
  ' CHANGELOG.md | sed -e '/./,$!d'
  exit 0
fi

problems=()
[[ -n "$cargo_version" ]] || problems+=("Cargo.toml: no version in [package]")
[[ -n "$app_version" ]] || problems+=("helm/ssehub/Chart.yaml: no appVersion")
if [[ -z "$release_heading" ]]; then
  problems+=("CHANGELOG.md: no release heading '## [X.Y.Z] - YYYY-MM-DD'")
elif ! grep -qE '^## \[[0-9]+\.[0-9]+\.[0-9]+\] - [0-9]{4}-[0-9]{2}-[0-9]{2}$' <<<"$release_heading"; then
  problems+=("CHANGELOG.md: '$release_heading' is not '## [X.Y.Z] - YYYY-MM-DD'")
fi
if [[ "$app_version" != "$cargo_version" ]]; then
  problems+=("helm/ssehub/Chart.yaml: appVersion $app_version, Cargo.toml says $cargo_version")
fi
if [[ "$changelog_version" != "$cargo_version" ]]; then
  problems+=("CHANGELOG.md: latest release $changelog_version, Cargo.toml says $cargo_version")
fi
if ! grep -qxF "[$changelog_version]: https://github.com/ssehub/ssehub/releases/tag/v$changelog_version" CHANGELOG.md; then
  problems+=("CHANGELOG.md: no link line '[$changelog_version]: https://github.com/ssehub/ssehub/releases/tag/v$changelog_version'")
fi
if [[ $# -gt 0 ]]; then
  tag="$1"
  [[ "$tag" == "v$cargo_version" ]] || problems+=("tag $tag does not name Cargo.toml's version $cargo_version (expected v$cargo_version)")
fi
if ((${#problems[@]})); then
  printf '%s\n' "${problems[@]}" >&2
  exit 1
fi
echo "$cargo_version"
