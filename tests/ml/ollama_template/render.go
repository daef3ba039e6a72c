// Renders an Ollama TEMPLATE the way Ollama does: Go's text/template over the chat's messages.
// Reads {"template": "...", "messages": [{"role": ..., "content": ...}]} on stdin, writes the text.
// The fields are named as in Ollama's api.Message, which its templates address (.Role, .Content).
package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type Values struct {
	Messages []Message
}

func main() {
	var input struct {
		Template string    `json:"template"`
		Messages []Message `json:"messages"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
		panic(err)
	}
	tmpl := template.Must(template.New("").Option("missingkey=zero").Parse(input.Template))
	if err := tmpl.Execute(os.Stdout, Values{Messages: input.Messages}); err != nil {
		panic(err)
	}
}
