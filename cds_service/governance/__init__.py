"""Clinical governance outputs for CDS and pharmacy & therapeutics committees: an HTML report of how
clinicians respond to the cards (report_html), and the rules as FHIR knowledge artifacts
(fhir_export). Both are generated from the definitions the service runs."""
