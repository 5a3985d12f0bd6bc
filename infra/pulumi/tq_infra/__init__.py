"""tq's AWS deployment as a Pulumi program: one ``ComponentResource`` per tier, built from the repo's own specs."""
