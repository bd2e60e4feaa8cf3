{{/* Environment of every Directus container (bootstrap, schema apply, server). */}}
{{- define "devdeps.directusEnv" -}}
envFrom:
  - secretRef:
      name: directus
env:
  - name: DB_CLIENT
    value: pg
  - name: DB_HOST
    value: postgres
  - name: DB_PORT
    value: "5432"
  - name: DB_DATABASE
    value: {{ .Values.postgres.directusDatabase | quote }}
  - name: DB_USER
    value: {{ .Values.postgres.user | quote }}
  - name: PUBLIC_URL
    value: {{ .Values.directus.publicUrl | quote }}
  - name: WEBSOCKETS_ENABLED
    value: "true"
  - name: TELEMETRY
    value: "false"
  # The server container mounts the business plane's events-claim extension into EXTENSIONS_PATH; an
  # extension that fails to load stops Directus instead of leaving it running without the claim.
  - name: EXTENSIONS_PATH
    value: /directus/extensions
  - name: EXTENSIONS_MUST_LOAD
    value: "true"
  # Also how stale a claim-authorized subscription's permission can be in the live gateway (values.yaml).
  - name: ACCESS_TOKEN_TTL
    value: {{ .Values.directus.accessTokenTtl | quote }}
  - name: PITWALL_EVENTS_CLAIM_LEAD
    value: {{ .Values.directus.eventsClaim.lead | quote }}
  - name: PITWALL_EVENTS_CLAIM_GRACE
    value: {{ .Values.directus.eventsClaim.grace | quote }}
  - name: PITWALL_EVENTS_CLAIM_MAX
    value: {{ .Values.directus.eventsClaim.max | quote }}
{{- end -}}
