"""Inference for fixed effects: Satterthwaite and Kenward-Roger df, contrasts, ANOVA."""
