"""The retention domain: policies, the retention rules, the permits rules and the re-decision judge."""
