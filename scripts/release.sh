#!/usr/bin/env bash
# Publishes a release to an OCI registry, as `make release` does:
#   REGISTRY/tailgate:VERSION         the image, every platform of `make image`'s
#                                     manifest list (its OCI layout, bin/oci)
#   (referrers of each platform)      that platform's CycloneDX SBOM (bin/sbom),
#                                     artifact type application/vnd.cyclonedx+json
#   REGISTRY/charts/tailgate:VERSION  the Helm chart, whose default image is the
#                                     one just pushed, pinned by digest
#
# Usage: scripts/release.sh REGISTRY     e.g. ghcr.io/tailgate-dev
#   PLAIN_HTTP=1  the registry serves plain HTTP (a local or test registry)
#   OCI_DIR, SBOM_DIR  default bin/oci and bin/sbom
# Prints the image's digest reference on its last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
registry=${1:?usage: release.sh REGISTRY}
registry=${registry%/}
version=$("$root/scripts/release-info.sh" VERSION)
oci=${OCI_DIR:-$root/bin/oci}
sboms=${SBOM_DIR:-$root/bin/sbom}
oras=$("$root/scripts/install-go-tool.sh" oras | tail -1)/oras
helm=$("$root/scripts/install-go-tool.sh" helm | tail -1)/helm
plain=() to_plain=() # oras cp names the destination's flag apart
if [ -n "${PLAIN_HTTP:-}" ]; then plain=(--plain-http) to_plain=(--to-plain-http); fi
image=$registry/tailgate

[ -f "$oci/index.json" ] || { echo "release: no image layout at $oci (make image)" >&2; exit 1; }
echo "release: pushing $image:$version (every platform of $oci)" >&2
"$oras" cp --from-oci-layout "${to_plain[@]}" "$oci:$version" "$image:$version" >&2
digest=$("$oras" resolve "${plain[@]}" "$image:$version")

# Each platform's SBOM, attached to that platform's manifest.
shopt -s nullglob
attached=0
for sbom in "$sboms"/tailgate-"$version"-linux-*.cdx.json; do
  platform=${sbom##*/tailgate-"$version"-}
  platform=${platform%.cdx.json}
  platform=${platform/-//}
  echo "release: attaching $(basename "$sbom") to $image:$version ($platform)" >&2
  (cd "$(dirname "$sbom")" && "$oras" attach "${plain[@]}" --platform "$platform" \
    --artifact-type application/vnd.cyclonedx+json \
    "$image:$version" "$(basename "$sbom"):application/vnd.cyclonedx+json" >&2)
  attached=$((attached + 1))
done
[ "$attached" -gt 0 ] || { echo "release: no SBOM in $sboms (make sbom)" >&2; exit 1; }

# The chart, its links into configs/ and deploy/ resolved, with the image
# just pushed as its default.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -rL "$root/deploy/helm/tailgate" "$stage/tailgate"
values=$stage/tailgate/values.yaml
sed -i -E "0,/^  repository: .*/s||  repository: $image|; 0,/^  digest: .*/s||  digest: \"$digest\"|" "$values"
grep -q "^  repository: $image\$" "$values" && grep -q "^  digest: \"$digest\"\$" "$values" ||
  { echo "release: could not set the chart's image in values.yaml" >&2; exit 1; }
"$helm" package "$stage/tailgate" -d "$stage" >&2
"$helm" push "$stage/tailgate-$version.tgz" "oci://$registry/charts" "${plain[@]}" >&2
echo "$image@$digest"
