"""The admission webhook's outside edges: TLS material, the HTTPS server,
the ValidatingWebhookConfiguration, and the AdmissionReview wire format.

`certs` makes and checks certificates, `server` serves reviews over HTTPS and
reloads rotated certificates, `registration` keeps the cluster's
ValidatingWebhookConfiguration in step with what is targeted, `review` turns an
AdmissionReview plus `keepfix.core.policy` findings into the answer, and
`prevented` counts denials into `status.prevented` off the request path.
"""
