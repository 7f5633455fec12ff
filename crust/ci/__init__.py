"""CI fan-out: `./build.py ci github|gitlab` writes a workflow with one job per appliance.

Each job runs on its own runner (a root shell on a Debian 12 machine with libvirt: the runner
labels or tags are options), sets Crust up, builds its appliance with the shared step cache,
smoke-tests it, keeps the JUnit results and the manifest as artifacts, and on the default branch
only uploads to the appliance's configured cloud targets. The cache's signing key is a CI secret
given to default-branch jobs only: merge requests and pull requests fetch and never push.

    fanout   the jobs and their shell commands, shared by both renderers
    github   .github/workflows/crust.yml
    gitlab   .gitlab-ci.yml
"""
