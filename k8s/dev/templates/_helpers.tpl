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
{{- end -}}
